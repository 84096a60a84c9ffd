"""Jinja2 templates and CSS of the HTML report, shipped inside the wheel as lfwbench.templates."""
