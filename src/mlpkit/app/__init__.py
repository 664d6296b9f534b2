"""The Hydra front door: the command line, the config's checks, and a run built from a config."""
