"""Cookie token codecs: a Record in, a cookie-safe token out, and back."""
