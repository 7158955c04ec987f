"""The operator console: a web page served by the station for its duty officers."""
