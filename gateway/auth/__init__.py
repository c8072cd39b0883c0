"""Authentication (digest, basic) and authorization of XCAP requests."""
