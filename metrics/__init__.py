"""Built-in facebench metrics; importing this package registers them."""
