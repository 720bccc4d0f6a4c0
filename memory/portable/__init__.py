"""Moving memproxy's records between backends and in and out of Letta agent files.

records: the portable record shapes (one JSON object per record, typed by `kind`) and the file header;
fileio: the gzip JSON-lines file; dump: writing every record of a backend; load: importing a file.
"""
