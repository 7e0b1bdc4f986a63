"""Loading weights written by other libraries."""
