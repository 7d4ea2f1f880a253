"""CNCF distribution (2.8 and 3.x): its mark & sweep model, its `garbage-collect` runner and
output parser, and the check that runs before a real collection."""
