"""xspress3-ioc: an EPICS IOC, data stream and HDF5 writer for the Xspress3 readout."""

__version__ = "0.1.0"
