import { loadDefinitions } from '../server/fhir/definitions.ts';
import { convertToSearchableDates, convertToSearchableNumbers, toTypedValue, evalFhirPathTyped } from '@medplum/core';
loadDefinitions();
const o = toTypedValue({resourceType:'Observation', effectiveDateTime:'2015', valuePeriod:{start:'2015-02-07T13:28:17-05:00'}} as any);
console.log(convertToSearchableDates(evalFhirPathTyped('Observation.effective', [o])), convertToSearchableDates(evalFhirPathTyped('Observation.value', [o])));
