"""The default pixel limit, apart from the decoders so that building the command line's
parsers (`--max-pixels`) imports no image library."""

# A 200-megapixel phone photo (16320 x 12240) passes, a 20000 x 20000 decompression bomb is
# refused. 0 means no limit (`--max-pixels 0`).
DEFAULT_MAX_PIXELS = 200_000_000
