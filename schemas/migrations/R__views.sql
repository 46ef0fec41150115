-- Repeatable: re-applied by Flyway whenever its checksum changes.

CREATE OR REPLACE VIEW dashboard_overview AS
SELECT d.id,
       d.name,
       d.template_slug,
       t.title AS template_title,
       u.email AS owner_email,
       d.updated_at
FROM dashboards d
LEFT JOIN dashboard_templates t ON t.slug = d.template_slug
LEFT JOIN users u ON u.id = d.owner_id;

CREATE OR REPLACE VIEW user_permissions AS
SELECT ur.user_id,
       unnest(r.permissions) AS permission
FROM user_roles ur
JOIN system_roles r ON r.name = ur.role_name;
