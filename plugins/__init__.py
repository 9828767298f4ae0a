"""Built-in ntd stage plugins."""
