"""Built-in facebench methods; importing this package registers them."""
