"""Stores for observatory records: SQLite, JSON-lines files or memory, behind one interface.

>>> import os, tempfile
>>> from unittest import mock
>>> scratch = tempfile.TemporaryDirectory()
>>> _ = mock.patch.dict(os.environ, PANDIR=scratch.name).start()  # a scratch $PANDIR
>>> from panoptes_cli.database import PanDB
>>> db = PanDB(db_type='sqlite', db_name='panoptes_testing')
>>> record_id = db.insert_current('weather', {'temp': 12.5, 'safe': True})
>>> db.get_current('weather')['_id'] == record_id
True
>>> PanDB.permanently_erase_database('sqlite', 'panoptes_testing', really='Yes', dangerous='Totally')
>>> mock.patch.stopall(); scratch.cleanup()
"""

from panoptes_cli.database.base import (
    AbstractPanDB,
    DatabaseError,
    PanDB,
    create_storage_obj,
    get_db_class,
)
from panoptes_cli.database.file import PanFileDB
from panoptes_cli.database.memory import PanMemoryDB
from panoptes_cli.database.sqlite import PanSQLiteDB

__all__ = ['AbstractPanDB', 'DatabaseError', 'PanDB', 'PanFileDB', 'PanMemoryDB', 'PanSQLiteDB',
           'create_storage_obj', 'get_db_class']
