module matih.dev/controlplane/testcloud

go 1.25
