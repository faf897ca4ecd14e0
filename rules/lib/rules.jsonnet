function(budgets=[], config={}) local m = (import '../mixin.libsonnet') + { _config+:: config { budgets: budgets } }; { groups: m.prometheusRules.groups + m.prometheusAlerts.groups }
