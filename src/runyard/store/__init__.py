"""Where runs and tasks live: SQLAlchemy tables, the database handle, migrations."""
