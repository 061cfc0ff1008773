"""Embedded station and protocol files, so that ``labctl run`` works with no arguments."""
