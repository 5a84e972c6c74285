-- One PostgreSQL server, one database per role: the ERP source, Dagster storage, Superset metadata.
CREATE DATABASE erp;
CREATE DATABASE dagster;
CREATE DATABASE superset;
