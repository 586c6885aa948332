"""The client-side commands of ``leaderelection``: ``status`` and ``run``.

They talk to a service over HTTP and import ``httpx`` alone (never a server
library), so they work where only the client is installed.
"""
