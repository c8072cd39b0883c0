"""The XCAP front end: URIs, document codecs, error documents and the aiohttp views."""
