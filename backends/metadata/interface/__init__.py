"""What a metadata store promises, whatever its database: the abstract stores (tracking in
:mod:`store`, with :mod:`registry`, :mod:`auth` and :mod:`gc`), the entities they take and
return, and the validation of what callers send them."""
