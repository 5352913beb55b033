-- The audit log's user and resource indexes on the user name and the resource id alone, as
-- migrations/postgres/0010: every audited request appends a row, and narrower keys cost it
-- less. The queries filter the type and the time on the rows found and sort by audit_id.

ALTER TABLE audit_log
    DROP INDEX audit_log_user,
    DROP INDEX audit_log_resource,
    ADD INDEX audit_log_user (username(255)),
    ADD INDEX audit_log_resource (resource_id(255));
