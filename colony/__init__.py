"""Many peers: the command line, launcher, discovery, sync and fitness."""
