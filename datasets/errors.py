"""Exceptions raised while locating, verifying and parsing data files."""


class DataError(Exception):
    """Base class: anything wrong with a data set's files or contents."""


class DataNotFoundError(DataError):
    """A required file is in none of the searched places and could not be downloaded."""


class DataFormatError(DataError):
    """A file exists but its layout or values are not what the loader expects."""


class ChecksumError(DataError):
    """A known file's sha256 digest is not one of the accepted digests."""
