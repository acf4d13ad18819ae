"""The forgery suite: every forged credential, signature and name is refused and changes nothing."""
