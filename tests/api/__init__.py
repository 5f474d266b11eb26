"""Tests of monitor/api: bad input, credentials, token scoping, and the OpenAPI shapes of every answer."""
