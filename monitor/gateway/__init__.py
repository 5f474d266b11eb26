"""The predict gateway, the product's runtime edge: predict with the output policy applied, per-client
restrictions (label only, rounding, throttle, block), and logging each answered query."""
