// The dashboards on their own, with the mixin's one _config (shared with the rules).
(import '../rules/config.libsonnet') + (import 'dashboards.libsonnet')
