"""Helpers shared by the test modules of every tier (fixtures stay in conftest.py)."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
