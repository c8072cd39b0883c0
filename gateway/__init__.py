"""xcap-gateway: enterprise directories served to SIP phones as XCAP documents."""

__version__ = "0.1.0"
