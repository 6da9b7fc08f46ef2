"""Data: FreiHAND reader, the virtual-camera crop, synthetic FreiHAND-format hands."""
