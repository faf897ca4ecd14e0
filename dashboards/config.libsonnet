{
  _config+:: {
    // Same selector and cluster label as the rules mixin.
    chargebackSelector: 'job="chargeback"',
    clusterLabel: 'cluster',
    // Grafana unit for money; match the exporter's pricing.currency (currencyUSD, currencyEUR, ...).
    currencyUnit: 'currencyUSD',
    defaultFrom: 'now-30d',
    refresh: '5m',
    tags: ['chargeback', 'cost'],
    uids: {
      overview: 'chargeback-overview',
      team: 'chargeback-team',
      idle: 'chargeback-idle',
      budgets: 'chargeback-budgets',
      clusters: 'chargeback-clusters',
    },
  },
}
