"""Storage backends. Each module imports its own client library; ``registry``
chooses one by URL scheme and imports only that one."""
