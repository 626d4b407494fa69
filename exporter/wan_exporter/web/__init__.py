"""HTTP: the server, its connections, web config (TLS, auth) and exposition."""
