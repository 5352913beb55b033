-- Version 16 changes MariaDB's metric_series primary key (migrations/mysql/0016); nothing
-- changes here. The version exists so every dialect numbers its schema alike.

SELECT 1;
