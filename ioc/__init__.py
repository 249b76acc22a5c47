"""The Xspress3 IOC: caproto PVGroups, acquisition state machine and readout thread.

This package never calls ctypes; it drives the detector through xspress3.driver.
"""
