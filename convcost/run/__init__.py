"""Build stock modules, trace, count, time and calibrate: everything that runs torch."""
