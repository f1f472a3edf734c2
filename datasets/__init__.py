"""Built-in facebench datasets; importing this package registers them."""
