"""coursekit."""
