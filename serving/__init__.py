"""The outer layer: settings, command line, HTTP, storage and database wiring."""
