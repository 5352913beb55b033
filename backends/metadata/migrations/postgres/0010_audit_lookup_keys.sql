-- The audit log's user and resource indexes on the user name and the resource id alone.
-- Every audited request (every log-metric with auth on) appends a row, and these two
-- B-trees cost the most of it: a 2,500-row COPY took 7.2 us of server CPU a row with
-- (username, ts) and (resource_type, resource_id, ts), 5.2-5.6 with these (40 COPYs into a
-- fresh table, 64 resources, one user). The queries filter the type and the time on the
-- rows found and sort by audit_id as before: on a million rows (20 users, 2,000 runs)
-- each of user, run, time, user + time and run + time took as long with these as with the
-- old ones (0.2-4 ms for a page of 100), and the indexes took 58 MB instead of 183 (equal
-- keys are stored once, PostgreSQL 13 and newer).
DROP INDEX audit_log_user;
DROP INDEX audit_log_resource;
CREATE INDEX audit_log_user ON audit_log (username);
CREATE INDEX audit_log_resource ON audit_log (resource_id);
