"""The applications ``hetnic stack up`` runs on its stack instances (HTTP/1.1 static files,
TCP echo and discard, UDP echo), written on the stack's non-blocking sockets."""
