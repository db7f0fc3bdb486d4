"""Entry points for people and CI: each tools/*.py and *.sh is a command (its docstring or header says how
to run it); what they share is the library tools/lib/, and no tool imports another."""
