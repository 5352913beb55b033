"""One module per database: its connections (and pool), migrations, error translation and
the SQL only it speaks. Each imports its own driver; nothing here is imported until a URI
names it (:mod:`backends.registry`)."""
