// The app's storage account (AzureWebJobsStorage): the host's own state, the payment-file
// containers, the tables, and the container Flex Consumption deploys the app package from.
// Shared-key access is off: the app and the host reach it with the app's managed identity.

param name string
param location string
param tags object = {}
param containers array
param tables array
@description('The container Flex Consumption deploys the app package from.')
param deploymentContainer string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: the app on Flex Consumption without a virtual network, and Event Grid's storage system topic, reach the account over its public endpoint; shared keys are off, so every request needs an Entra ID role
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35 (public endpoint on, anonymous and shared-key access off)
  // checkov:skip=CKV_AZURE_206: locally redundant by choice: the cheapest at rest, and ZRS is not offered in every Flex Consumption region; payment files are re-sent by their owner
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for c in concat(containers, [deploymentContainer]): {
  parent: blobs
  name: c
  properties: {
    publicAccess: 'None'
  }
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource table 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for t in tables: {
  parent: tableService
  name: t
}]

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
