function(config={}) ((import '../mixin.libsonnet') + { _config+:: config }).grafanaDashboards
