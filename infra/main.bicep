// The whole app in one resource group: `azd up`, or
//   az deployment group create -g RG -f infra/main.bicep -p environmentName=NAME
// then `func azure functionapp publish <functionAppName>` and infra/event-subscriptions.bicep.
// Entity names of Service Bus come from emulators/servicebus/config.json (modules/servicebus.bicep);
// container and table names are those of choreography/entities.py (tests/infra checks both).

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(20)
@description('Name of the environment (azd); resource names are derived from it.')
param environmentName string

@description('Azure region; Flex Consumption is available in a subset of regions.')
param location string = resourceGroup().location

@description('Upper bound of instances Flex Consumption scales the app out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance (MB); 2048 is the Flex Consumption default.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Your own Entra ID object id (azd passes AZURE_PRINCIPAL_ID): given blob and table data roles on the storage account so you can drop a file and seed reference data. Empty: none.')
param principalId string = ''

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName }

// choreography/entities.py: CONTAINERS and TABLES.
var containers = [
  'payment-files-in'
  'payment-files-work'
  'payment-files-out'
  'payment-status-reports'
  'payment-files-rejected'
]
var tables = [
  'deliveries'
  'packages'
  'drones'
  'notifications'
  'paymentfiles'
  'paymentreference'
]
var deploymentContainer = 'app-package'

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-${token}'
    applicationInsightsName: 'appi-${token}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${token}'
    location: location
    tags: tags
    containers: containers
    tables: tables
    deploymentContainer: deploymentContainer
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    name: 'sb-${token}'
    location: location
    tags: tags
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  params: {
    location: location
    tags: tags
    topicNames: [
      'evgt-deliveries-${token}'
      'evgt-payments-${token}'
    ]
    storageAccountName: storage.outputs.name
    systemTopicName: 'evgs-storage-${token}'
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: 'func-${token}'
    planName: 'plan-${token}'
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: '${storage.outputs.blobEndpoint}${deploymentContainer}'
    serviceBusNamespace: serviceBus.outputs.name
    deliveriesTopicEndpoint: eventGrid.outputs.topicEndpoints[0]
    paymentsTopicEndpoint: eventGrid.outputs.topicEndpoints[1]
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    principalId: functionApp.outputs.principalId
    userPrincipalId: principalId
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.name
    eventGridTopicNames: [
      'evgt-deliveries-${token}'
      'evgt-payments-${token}'
    ]
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
  dependsOn: [
    eventGrid
  ]
}

output AZURE_LOCATION string = location
output FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output SERVICE_BUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output EVENT_GRID_DELIVERIES_TOPIC string = 'evgt-deliveries-${token}'
output EVENT_GRID_PAYMENTS_TOPIC string = 'evgt-payments-${token}'
output EVENT_GRID_STORAGE_SYSTEM_TOPIC string = eventGrid.outputs.systemTopicName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
