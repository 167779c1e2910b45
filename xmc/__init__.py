"""The xmc command line."""
