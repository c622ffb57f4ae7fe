// The Functions app on Flex Consumption (Linux, Python 3.11) with a system-assigned identity.
// Every connection is identity-based: app settings name accounts and namespaces, never keys.

param name string
param planName string
param location string
param tags object = {}
param storageAccountName string
param deploymentContainerUrl string
param serviceBusNamespace string
param deliveriesTopicEndpoint string
param paymentsTopicEndpoint string
param applicationInsightsConnectionString string
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int
@allowed([512, 2048, 4096])
param instanceMemoryMB int

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption places instances itself; zone redundancy is an opt-in with always-ready instances (a cost at rest this sample avoids)
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: the HTTP API (POST /api/deliveries) is public by design, behind function keys
  // checkov:skip=CKV_AZURE_17: callers authenticate with function keys; client certificates would lock out Event Grid's webhook deliveries
  // checkov:skip=CKV_AZURE_212: scale to zero is the point of Flex Consumption; a minimum instance count is a cost at rest
  // checkov:skip=CKV_AZURE_213: healthCheckPath is not set because its support on Flex Consumption could not be checked offline; GET /api/health answers for an external probe
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // The host's storage and the app's (blobs, tables): choreography/settings.py reads the
        // same identity forms the host does.
        { name: 'AzureWebJobsStorage__accountName', value: storageAccountName }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'ServiceBusConnection__fullyQualifiedNamespace', value: '${serviceBusNamespace}.servicebus.windows.net' }
        { name: 'ServiceBusConnection__credential', value: 'managedidentity' }
        // No *TopicKey settings: the app publishes to Event Grid with its identity.
        { name: 'EventGridTopicEndpoint', value: deliveriesTopicEndpoint }
        { name: 'EventGridTopic__credential', value: 'managedidentity' }
        { name: 'PaymentsEventGridTopicEndpoint', value: paymentsTopicEndpoint }
        { name: 'PaymentsEventGridTopic__credential', value: 'managedidentity' }
        // Flex Consumption supports only the Event Grid-based blob trigger.
        { name: 'PAYMENT_FILES_BLOB_TRIGGER_SOURCE', value: 'EventGrid' }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: applicationInsightsConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD' }
      ]
    }
  }
}

output name string = app.name
output id string = app.id
output principalId string = app.identity.principalId
output defaultHostName string = app.properties.defaultHostName
