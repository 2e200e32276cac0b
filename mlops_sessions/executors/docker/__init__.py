"""Docker engine: build, scan, push and run images through the Docker SDK."""
