"""Pulumi components, one concern per module."""
