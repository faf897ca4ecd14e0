function(budgets=[]) local m = (import '../mixin.libsonnet') + { _config+:: { budgets: budgets } }; { groups: m.prometheusRules.groups + m.prometheusAlerts.groups }
