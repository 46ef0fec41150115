-- Reference tables filled by the seed data of phase 2 (default dashboard templates, system roles).

CREATE TABLE system_roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    permissions TEXT[] NOT NULL,
    built_in    BOOLEAN NOT NULL DEFAULT true
);

CREATE TABLE user_roles (
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_name TEXT NOT NULL REFERENCES system_roles (name),
    PRIMARY KEY (user_id, role_name)
);

CREATE TABLE dashboard_templates (
    slug        TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    category    TEXT NOT NULL,
    description TEXT NOT NULL,
    definition  JSONB NOT NULL
);

ALTER TABLE dashboards ADD COLUMN template_slug TEXT REFERENCES dashboard_templates (slug);
