"""`python -m lfwbench` runs the command-line tool."""

from lfwbench.cli import main

main()
